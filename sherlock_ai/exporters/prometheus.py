"""Prometheus metrics of the measured web requests (``pip install "sherlock-ai[prometheus]"``).

``add_consumer(PrometheusExporter(registry=None))`` turns every measured request of the
ASGI/WSGI middleware and the Flask extension into metrics; :func:`metrics_asgi_app` (a route:
``app.add_route("/metrics", metrics_asgi_app())``) and :func:`metrics_wsgi_app` serve them.
Labels are bounded: the method, the route template and the status class, never a raw path or
an id. See docs/metrics.md for each metric's meaning.
"""

from __future__ import annotations

import os
from typing import Any, Awaitable, Callable, Iterable, Optional, Sequence, Tuple

from .._extras import missing_extra
from ..bounded import BoundedCache

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.core import GaugeMetricFamily
except ImportError as _exc:
    raise missing_extra(_exc, __name__) from _exc

from ..consumers import Consumer
from ..engine.measurement import Measurement
from ..engine.requests import OpenRequest
from .labels import TaskNames, status_class

LABELS = ("method", "route", "status_class")
#: The labels of task runs (Celery): the task's name and the run's status (SUCCESS, ERROR,
#: RETRY).
TASK_LABELS = ("task", "status")
# The consumers' protocol of a task run (sherlock_ai.integrations.celery.PROTOCOL; that module
# imports Celery).
TASK_PROTOCOL = "celery"
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# Powers of four from 4 KiB to 1 GiB: RSS moves in pages, and leaks show in the upper buckets.
MEMORY_BUCKETS = tuple(float(4 ** n * 1024) for n in range(1, 11))
# How often, in requests, a worker in multiprocess mode refreshes its leak-suspect gauge.
_SUSPECT_REFRESH = 100
# The most (method, route, status code) keys whose label children are kept ready; the labels
# are bounded already (standard methods, route templates), this is a backstop.
_CHILDREN_CACHE = 4096


def multiprocess_mode() -> bool:
    """Whether prometheus_client's multiprocess mode is on (``PROMETHEUS_MULTIPROC_DIR``)."""
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


class PrometheusExporter(Consumer):
    """Request metrics for Prometheus, fed by sherlock_ai's measurements.

    ``registry``: where the metrics are registered (default: prometheus_client's global
    registry). ``duration_buckets`` (seconds) and ``memory_buckets`` (bytes) set the
    histograms' upper bounds. Nothing is recorded until it is registered as a consumer:
    ``sherlock_ai.add_consumer(exporter)`` (``remove_consumer`` stops it; the values stay).
    """

    wants_all = True  # the histograms count every request, logged or not

    def __init__(
        self,
        registry: Optional[CollectorRegistry] = None,
        *,
        duration_buckets: Sequence[float] = DURATION_BUCKETS,
        memory_buckets: Sequence[float] = MEMORY_BUCKETS,
    ) -> None:
        # Long because it declares every metric in one place (one statement each), so that
        # docs/metrics.md's table can be checked against one screen of code.
        self.registry = REGISTRY if registry is None else registry
        if not isinstance(self.registry, CollectorRegistry):
            raise TypeError(f"registry must be a prometheus_client CollectorRegistry, got "
                            f"{registry!r}")
        duration_buckets = _check_buckets("duration_buckets", duration_buckets)
        memory_buckets = _check_buckets("memory_buckets", memory_buckets)
        reg = self.registry
        self.duration = Histogram(
            "sherlock_request_duration_seconds",
            "Time from the request's start to the last byte of its response.",
            LABELS, buckets=duration_buckets, registry=reg)
        self.rss_growth = Histogram(
            "sherlock_request_rss_growth_bytes",
            "Growth of the process's RSS over the request (0 when it shrank); process-wide.",
            LABELS, buckets=memory_buckets, registry=reg)
        self.traced_peak = Histogram(
            "sherlock_request_traced_peak_bytes",
            "Most Python memory (tracemalloc) the request had allocated at once; only with "
            "trace_malloc.", LABELS, buckets=memory_buckets, registry=reg)
        self.in_progress = Gauge(
            "sherlock_requests_in_progress", "Measured requests that have not ended yet.",
            registry=reg, multiprocess_mode="livesum")
        self.process_rss = Gauge(
            "sherlock_process_rss_bytes",
            "The process's RSS at the end of its latest measured request.",
            registry=reg, multiprocess_mode="liveall")
        self.budget_warnings = Counter(
            "sherlock_memory_budget_exceeded",
            "Requests whose memory went over their memory_budget (memory guard).",
            ("method", "route"), registry=reg)
        self.shed_requests = Counter(
            "sherlock_requests_shed",
            "Requests answered 503 while the process was over its rss_limit (memory guard).",
            ("method", "route"), registry=reg)
        self.task_duration = Histogram(
            "sherlock_task_duration_seconds",
            "Time from a task run's start (task_prerun) to its end (task_postrun).",
            TASK_LABELS, buckets=duration_buckets, registry=reg)
        self.task_rss_growth = Histogram(
            "sherlock_task_rss_growth_bytes",
            "Growth of the worker process's RSS over the task run (0 when it shrank).",
            TASK_LABELS, buckets=memory_buckets, registry=reg)
        self.task_traced_peak = Histogram(
            "sherlock_task_traced_peak_bytes",
            "Most Python memory (tracemalloc) the task run had allocated at once; only with "
            "trace_malloc.", TASK_LABELS, buckets=memory_buckets, registry=reg)
        self.tasks_in_progress = Gauge(
            "sherlock_tasks_in_progress", "Measured task runs that have not ended yet.",
            registry=reg, multiprocess_mode="livesum")
        self.worker_deaths = Counter(
            "sherlock_worker_deaths",
            "Processes that ended without closing their flight record, counted by the process "
            "that told it, by cause (oom_killer, sigkill, signal, exit, unknown).",
            ("cause",), registry=reg)
        self._multiprocess = multiprocess_mode()
        if self._multiprocess:
            self.suspects_gauge: Optional[Gauge] = Gauge(
                "sherlock_leak_suspect_bytes_per_request",
                "Bytes a leak-suspect route retains per request (leak detection).",
                ("method", "route", "site", "kind"), registry=reg, multiprocess_mode="livemax")
            self._suspects = None
        else:
            self.suspects_gauge = None
            self._suspects = _SuspectCollector()
            reg.register(self._suspects)
        self._since_refresh = 0
        # (method, route, status code) -> the three histograms' children of those labels:
        # ``labels()`` (label check, tuple building, a lock and a lookup per histogram) once
        # per key instead of once per request and histogram.
        self._children: BoundedCache[Tuple[Any, ...], Tuple[Any, Any, Any]] = \
            BoundedCache(_CHILDREN_CACHE)
        self._task_names = TaskNames()
        # (task label, status) -> the task histograms' children (bounded by TaskNames).
        self._task_children: BoundedCache[Tuple[str, str], Tuple[Any, Any, Any]] = \
            BoundedCache(_CHILDREN_CACHE)

    def request_started(self, request: OpenRequest) -> None:
        (self.tasks_in_progress if request.protocol == TASK_PROTOCOL else self.in_progress).inc()

    # Every measurement that ended. Only web requests carry method and route.
    def measurement_ended(self, m: Measurement) -> None:
        protocol = m.protocol
        if protocol is not None:
            (self.tasks_in_progress if protocol == TASK_PROTOCOL else self.in_progress).dec()
        attributes = m.attributes
        route = attributes.get("route")
        if route is None or m.kind != "memory":
            task = attributes.get("task")
            if task is not None and m.kind == "memory":
                self._task_finished(task, m)
            return
        key = (attributes.get("method", "OTHER"), route, attributes.get("status_code"))
        children = self._children.get(key)
        if children is None:
            children = self._children_of(key)
        self._observe(children, m)
        if self.suspects_gauge is not None:
            self._since_refresh += 1
            if self._since_refresh >= _SUSPECT_REFRESH:
                self._since_refresh = 0
                self._refresh_suspects()

    def _children_of(self, key: Tuple[Any, ...]) -> Tuple[Any, Any, Any]:
        """The histograms' children for ``key``'s labels, kept for the next requests."""
        labels = (key[0], key[1], status_class(key[2]))
        children = (self.duration.labels(*labels), self.rss_growth.labels(*labels),
                    self.traced_peak.labels(*labels))
        return self._children.keep(key, children)

    def _task_finished(self, task: str, m: Measurement) -> None:
        labels = (self._task_names.label(task), m.status)
        children = self._task_children.get(labels)
        if children is None:
            children = self._task_children.keep(labels, (
                self.task_duration.labels(*labels), self.task_rss_growth.labels(*labels),
                self.task_traced_peak.labels(*labels)))
        self._observe(children, m)

    def _observe(self, children: Tuple[Any, Any, Any], m: Measurement) -> None:
        """Observe ``m``'s figures in a request's or a task run's three histograms."""
        duration, rss_growth, traced_peak = children
        duration.observe(m.duration)
        if m.rss_change is not None:
            rss_growth.observe(max(m.rss_change, 0))
        if m.traced_peak is not None:
            traced_peak.observe(m.traced_peak)
        if m.rss is not None:
            self.process_rss.set(m.rss)

    def memory_event(self, event: Any) -> None:
        kind = getattr(event, "event", None)
        if kind == "memory_budget":
            self.budget_warnings.labels(event.method, event.route).inc()
        elif kind == "request_shed":
            self.shed_requests.labels(event.method, event.route).inc()
        elif kind == "worker_died":
            self.worker_deaths.labels(event.cause).inc()

    def _refresh_suspects(self) -> None:
        gauge = self.suspects_gauge
        for suspect in _all_suspects():
            gauge.labels(suspect.method, suspect.route, suspect.site,  # type: ignore[union-attr]
                         suspect.kind_of_leak).set(suspect.per_request)


def _check_buckets(name: str, buckets: Sequence[float]) -> Sequence[float]:
    try:
        values = [float(b) for b in buckets]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a sequence of numbers, got {buckets!r}") from None
    if not values or values != sorted(set(values)) or values[0] < 0:
        raise ValueError(f"{name} must be increasing, non-negative and not empty, got "
                         f"{buckets!r}")
    return values


def _all_suspects() -> Iterable[Any]:
    from ..leaks import active_watches  # only services with leak detection hold watches

    for watch in active_watches():
        yield from watch.suspects()


class _SuspectCollector:
    """``sherlock_leak_suspect_bytes_per_request`` read from the live leak watches at scrape
    time (no cost per request)."""

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "sherlock_leak_suspect_bytes_per_request",
            "Bytes a leak-suspect route retains per request (leak detection).",
            labels=("method", "route", "site", "kind"))
        for suspect in _all_suspects():
            family.add_metric((suspect.method, suspect.route, suspect.site, suspect.kind_of_leak),
                              suspect.per_request)
        yield family

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


def metrics_registry(registry: Optional[CollectorRegistry] = None) -> CollectorRegistry:
    """The registry a /metrics endpoint serves: in multiprocess mode, a fresh one that
    aggregates every worker's files; else ``registry`` or the global one."""
    if multiprocess_mode():
        from prometheus_client import multiprocess

        aggregated = CollectorRegistry()
        multiprocess.MultiProcessCollector(aggregated)
        return aggregated
    return REGISTRY if registry is None else registry


def metrics_asgi_app(registry: Optional[CollectorRegistry] = None) -> MetricsASGIApp:
    """An ASGI app serving the metrics at any path: add it as a route,
    ``app.add_route("/metrics", metrics_asgi_app())``, so ``/metrics`` itself answers
    (``app.mount("/metrics", ...)`` answers ``/metrics`` with a redirect to ``/metrics/``)."""
    from prometheus_client import make_asgi_app

    return MetricsASGIApp(make_asgi_app(metrics_registry(registry)))


class MetricsASGIApp:
    """prometheus_client's ASGI app as an object: Starlette's routers take an object for an
    ASGI app but a plain function for a request handler, so ``add_route`` serves it as is."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def metrics_wsgi_app(registry: Optional[CollectorRegistry] = None) -> Any:
    """A WSGI app serving the metrics (e.g. with werkzeug's DispatcherMiddleware)."""
    from prometheus_client import make_wsgi_app

    return make_wsgi_app(metrics_registry(registry))
