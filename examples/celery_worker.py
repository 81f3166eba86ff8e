"""A Celery worker measured by sherlock_ai: one ``MEMORY | TASK {name}`` line per task run, the
id of the web request that sent a task in every line the task writes, leak detection per task
name, and a prefork child replaced once its RSS crosses 300 MB.

    redis-server --port 6379 --save ''                        # a broker (Debian: redis-server)
    celery -A celery_worker worker --loglevel INFO -c 2        # from examples/
    python celery_worker.py                                     # sends a few tasks

Look at ``logs/monitoring.log`` (the task runs) and ``logs/app.log`` (everything, with ids).
``BROKER_URL`` overrides the broker (default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import os
from typing import List

from celery import Celery

import sherlock_ai
from sherlock_ai.integrations.celery import instrument_celery

BROKER = os.environ.get("BROKER_URL", "redis://127.0.0.1:6379/0")

app = Celery("shop", broker=BROKER, backend=BROKER)
app.conf.broker_connection_retry_on_startup = True
# Set up before the worker starts: the worker empties the root logger's handlers when it
# starts, and sherlock_ai puts its files back right after.
sherlock_ai.sherlock_ai()
instrument_celery(
    app,
    leak_detection=True,
    memory_budget={"shop.tasks.render_report": "10MB"},
    rss_limit="300MB",
    on_rss_limit="recycle",
)
log = sherlock_ai.get_logger("shop.tasks")

# Every thumbnail ever made stays here: the leak the leak watch names, with this line.
THUMBNAILS: List[bytes] = []
# The latest report, kept for downloads: a run that renders a big one goes over its budget.
LATEST_REPORT: List[str] = []


@app.task(name="shop.tasks.thumbnail")
def thumbnail(image_id: int) -> int:
    log.info("thumbnail of image %d", image_id)
    THUMBNAILS.append(b"t" * 4096)
    return image_id


@app.task(name="shop.tasks.render_report")
def render_report(rows: int) -> int:
    LATEST_REPORT[:] = [f"row {n}" * 10 for n in range(rows)]
    return len(LATEST_REPORT)


@app.task(name="shop.tasks.notify", bind=True, max_retries=3)
def notify(self, order_id: int) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=1)  # a RETRY line, then SUCCESS
    log.info("order %d notified", order_id)
    return "sent"


if __name__ == "__main__":
    # What a web request does: its id travels in the messages (set here by hand).
    with sherlock_ai.request_id_context("order-4711"):
        notify.delay(4711)
        render_report.delay(200_000)
        for image in range(3):
            thumbnail.delay(image)
    print("sent: look for request id order-4711 in logs/app.log of the worker")
