"""gunicorn settings for prometheus_client's multiprocess mode (as in docs/metrics.md)."""

from prometheus_client import multiprocess


def child_exit(server, worker):
    # A worker that is gone must not keep its live gauges in the scrape.
    multiprocess.mark_process_dead(worker.pid)
