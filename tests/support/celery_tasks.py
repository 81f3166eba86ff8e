"""The Celery app of the Celery tests, imported by the real workers they start (``celery -A
celery_tasks worker``), by the web app that enqueues tasks and by the tests themselves.

Environment: ``BROKER_URL`` (a Redis URL), ``SHERLOCK_LOGS`` (JSON log files there, when
set) and ``SHERLOCK_TASK_OPTIONS`` (``instrument_celery``'s options as JSON); ``METRICS_PORT``: the
Prometheus metrics of the process served on that 127.0.0.1 port (for a solo worker, whose
tasks run in its main process).
"""

from __future__ import annotations

import json
import os
import time

from celery import Celery
from celery.utils.log import get_task_logger

import sherlock_ai
from sherlock_ai.integrations.celery import instrument_celery

app = Celery("shop", broker=os.environ["BROKER_URL"], backend=os.environ["BROKER_URL"])
app.conf.update(
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    task_default_retry_delay=0,
    result_expires=600,
)
if os.environ.get("SHERLOCK_LOGS"):
    sherlock_ai.sherlock_ai(sherlock_ai.LoggingConfig(
        logs_dir=os.environ["SHERLOCK_LOGS"], log_format_type="json", console_enabled=False))
instrumentation = instrument_celery(app, **json.loads(os.environ.get("SHERLOCK_TASK_OPTIONS",
                                                                     "{}")))
log = sherlock_ai.get_logger("shop.tasks")
# Celery's task loggers do not propagate to the root logger.
task_log = get_task_logger("shop.tasks.celery")
if os.environ.get("METRICS_PORT"):
    from prometheus_client import start_http_server

    from sherlock_ai.exporters.prometheus import PrometheusExporter

    sherlock_ai.add_consumer(PrometheusExporter())
    start_http_server(int(os.environ["METRICS_PORT"]), addr="127.0.0.1")

# What the leaking task keeps, and what the growing task holds.
_kept: list = []


@app.task(name="shop.add")
def add(x: int, y: int) -> int:
    log.info("adding %d and %d", x, y)
    task_log.info("added")
    return x + y


@app.task(name="shop.fail")
def fail() -> None:
    raise KeyError("no such order")


@app.task(name="shop.flaky", bind=True, max_retries=1)
def flaky(self) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "done"


@app.task(name="shop.fan_out")
def fan_out() -> str:
    log.info("fanning out")
    return add.delay(1, 2).id


@app.task(name="shop.grow")
def grow(megabytes: int) -> int:
    block = bytearray(megabytes << 20)
    block[::4096] = b"x" * len(block[::4096])  # touched: resident, not just reserved
    _kept.append(block)
    return len(_kept)


@app.task(name="shop.hold")
def hold(megabytes: int, seconds: float) -> int:
    """Holds ``megabytes`` while it sleeps (for a test to kill its process mid-run)."""
    block = bytearray(megabytes << 20)
    block[::4096] = b"x" * len(block[::4096])
    time.sleep(seconds)
    return len(block)


@app.task(name="shop.pid")
def pid() -> int:
    return os.getpid()


def _make_step(name: str, keeps: int):
    """Ten tasks share this code; only the one made with ``keeps`` retains that many bytes."""

    @app.task(name=name)
    def step(n: int) -> int:
        scratch = [bytes(64) for _ in range(40)]  # freed at the end of each run
        if keeps:
            _kept.append(bytearray(keeps))  # STEP_LEAKS
        return n + len(scratch)

    return step


STEPS = [_make_step(f"shop.steps.s{i}", 4096 if i == 3 else 0) for i in range(10)]
