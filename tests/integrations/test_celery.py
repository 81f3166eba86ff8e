"""The Celery integration with real parts: a Redis broker, ``celery worker`` processes (prefork
with 2 children, and solo) running ``celery_tasks``, a FastAPI app under uvicorn that enqueues
tasks, and the JSON lines the workers write to disk."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from celery_support import EXAMPLES, environment, free_port, redis_broker, task_lines, worker
from sherlock_ai import is_valid_request_id, request_id_context
from sherlock_ai.integrations.celery import instrument_celery
from web_support import SUPPORT, server

pytestmark = pytest.mark.servers

TASKS_FILE = SUPPORT / "celery_tasks.py"
WEB_ID = "web-request-7f3a"


@contextmanager
def sender(broker: str) -> Iterator[Celery]:
    """An instrumented app of this process that sends tasks to the worker by name."""
    app = Celery("sender", broker=broker, backend=broker)
    app.conf.broker_connection_retry_on_startup = True
    instrumentation = instrument_celery(app)
    try:
        yield app
    finally:
        instrumentation.uninstrument()
        app.close()


def line_of(marker: str) -> int:
    return next(n for n, line in enumerate(TASKS_FILE.read_text().splitlines(), 1)
                if line.rstrip().endswith(f"# {marker}"))


# -- the id travels ----------------------------------------------------------------------


def test_the_web_request_id_is_in_the_task_lines_on_disk(tmp_path, monkeypatch):
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path / "worker", broker) as tasks:
        monkeypatch.setenv("BROKER_URL", broker)
        monkeypatch.setenv("SHERLOCK_LOGS", str(tmp_path / "web-logs"))
        with server(str(SUPPORT / "celery_web.py"), cwd=tmp_path) as web:
            answer = httpx.get(f"{web.url}/enqueue", headers={"X-Request-ID": WEB_ID},
                               timeout=30)
        assert answer.status_code == 200
        assert answer.headers["x-request-id"] == WEB_ID
        # shop.add twice: sent by the request, and sent by shop.fan_out, a task.
        lines = tasks.wait_for(lambda ls: len(task_lines(ls, "shop.add")) == 2
                               and task_lines(ls, "shop.fan_out"))
        app_lines = tasks.wait_for(
            lambda ls: sum(r["message"] == "added" for r in ls) == 2, file="app")
    runs = task_lines(lines)
    assert sorted(r["name"] for r in runs) == ["TASK shop.add", "TASK shop.add",
                                               "TASK shop.fan_out"]
    assert {r["request_id"] for r in runs} == {WEB_ID}
    assert {r["task_id"] for r in runs} >= set(answer.json().values())
    # Two children ran them, each writing to the same files; the worker's hijack of the root
    # logger did not keep the tasks' own lines from app.jsonl.
    own = [r for r in app_lines if r["logger"] == "shop.tasks"]
    assert {r["request_id"] for r in own} == {WEB_ID} and len(own) == 3
    # Celery's task logger does not propagate to the root: its lines reach the files too.
    through_celery = [r for r in app_lines if r["logger"] == "shop.tasks.celery"]
    assert [(r["message"], r["request_id"]) for r in through_celery] == [("added", WEB_ID)] * 2


def test_a_task_sent_outside_any_request_gets_a_fresh_id_per_run(tmp_path):
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path / "worker", broker, pool="solo", concurrency=1) as tasks, \
            sender(broker) as app:
        for x in range(3):
            assert app.send_task("shop.add", args=(x, 1)).get(timeout=30) == x + 1
        with request_id_context("sent-from-a-script"):
            app.send_task("shop.add", args=(9, 9)).get(timeout=30)
        lines = tasks.wait_for(lambda ls: len(task_lines(ls)) == 4)
    ids = [r["request_id"] for r in task_lines(lines)]
    assert len(ids) == 4 and ids[3] == "sent-from-a-script"
    assert len(set(ids[:3])) == 3 and all(is_valid_request_id(i) for i in ids[:3])


# -- one MEMORY line per run --------------------------------------------------------------


def test_each_run_is_one_line_success_error_with_its_type_or_retry(tmp_path):
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path / "worker", broker, pool="solo", concurrency=1) as tasks, \
            sender(broker) as app:
        assert app.send_task("shop.add", args=(1, 2)).get(timeout=30) == 3
        with pytest.raises(KeyError):
            app.send_task("shop.fail").get(timeout=30)
        assert app.send_task("shop.flaky").get(timeout=30) == "done"
        lines = tasks.wait_for(lambda ls: len(task_lines(ls)) == 4)
    by_name = {}
    for r in task_lines(lines):
        by_name.setdefault(r["name"], []).append(r)
    added, = by_name["TASK shop.add"]
    assert added["status"] == "SUCCESS" and added["level"] == "INFO"
    assert added["message"].startswith("MEMORY | TASK shop.add | SUCCESS | ")
    assert " | Current: " in added["message"] and " | Change: " in added["message"]
    assert isinstance(added["rss"], int) and isinstance(added["rss_change"], int)
    failed, = by_name["TASK shop.fail"]
    assert failed["status"] == "ERROR" and failed["level"] == "ERROR"
    assert failed["error_type"] == "KeyError"
    assert failed["message"].endswith("| Error: KeyError: 'no such order'")
    retried, succeeded = by_name["TASK shop.flaky"]
    assert (retried["status"], succeeded["status"]) == ("RETRY", "SUCCESS")
    # The retry is the same work: its message was sent from the first run, with its id.
    assert retried["request_id"] == succeeded["request_id"]
    assert retried["task_id"] == succeeded["task_id"]


def test_a_worker_whose_level_drops_the_lines_says_so(tmp_path):
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path / "worker", broker, pool="solo", concurrency=1,
                   loglevel="WARNING") as tasks:
        lines = tasks.wait_for(lambda ls: bool(ls))
    assert any("the Celery worker's log level (WARNING) drops the INFO MEMORY lines of its "
               "tasks; start it with --loglevel INFO" in r["message"] for r in lines)


def test_prometheus_counts_task_runs_by_task_name_and_status(tmp_path):
    port = free_port()
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path / "worker", broker, pool="solo", concurrency=1,
                   metrics_port=port) as tasks, sender(broker) as app:
        for x in range(3):
            app.send_task("shop.add", args=(x, x)).get(timeout=30)
        with pytest.raises(KeyError):
            app.send_task("shop.fail").get(timeout=30)
        app.send_task("shop.flaky").get(timeout=30)
        tasks.wait_for(lambda ls: len(task_lines(ls)) == 6)
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    counts = {}
    for family in text_string_to_metric_families(scraped):
        for sample in family.samples:
            if sample.name == "sherlock_task_duration_seconds_count":
                counts[(sample.labels["task"], sample.labels["status"])] = sample.value
            if sample.name == "sherlock_task_rss_growth_bytes_count":
                assert set(sample.labels) == {"task", "status"}
    assert counts == {("shop.add", "SUCCESS"): 3, ("shop.fail", "ERROR"): 1,
                      ("shop.flaky", "RETRY"): 1, ("shop.flaky", "SUCCESS"): 1}
    # Task runs are not web requests: the request metrics stay empty, the gauge at rest.
    assert "sherlock_request_duration_seconds_count{" not in scraped
    assert "sherlock_tasks_in_progress 0.0" in scraped


# -- the memory guard ---------------------------------------------------------------------


def test_memory_budget_per_task_name(tmp_path):
    options = {"memory_budget": {"shop.grow": "10MB"}}
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path / "worker", broker, pool="solo", concurrency=1,
                   options=options) as tasks, sender(broker) as app:
        app.send_task("shop.add", args=(1, 2)).get(timeout=30)
        app.send_task("shop.grow", args=(20,)).get(timeout=30)
        lines = tasks.wait_for(lambda ls: any(r.get("event") == "memory_budget" for r in ls))
    budget, = [r for r in lines if r.get("event") == "memory_budget"]
    assert budget["name"] == "TASK shop.grow" and budget["budget_bytes"] == 10 << 20
    assert budget["measured_bytes"] > 10 << 20
    assert budget["message"].startswith("MEMORY BUDGET | TASK shop.grow | +")


def test_recycle_replaces_the_prefork_child_after_its_task(tmp_path):
    options = {"rss_limit": "150MB", "on_rss_limit": "recycle"}
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path / "worker", broker, options=options) as tasks, \
            sender(broker) as app:
        # shop.grow keeps 40 MB per run in its child: a child's third run crosses 150 MB.
        kept = []
        while not any(r.get("state") == "recycling" for r in tasks.lines()):
            assert len(kept) < 6, "no child recycled after five runs of 40 MB"
            kept.append(app.send_task("shop.grow", args=(40,)).get(timeout=60))
        recycling, = [r for r in tasks.lines() if r.get("state") == "recycling"]
        # The pool runs on with a fresh child in place of the one that left.
        pids = {app.send_task("shop.pid").get(timeout=60) for _ in range(6)}
        runs = task_lines(tasks.wait_for(
            lambda ls: len(task_lines(ls, "shop.grow")) == len(kept)), "shop.grow")
    err = (tmp_path / "worker" / "worker.err").read_text()
    assert recycling["message"].startswith("MEMORY LIMIT | recycling | RSS ")
    assert "| grew most: TASK shop.grow +" in recycling["message"]
    assert recycling["grew_most"][0]["route"] == "TASK shop.grow"
    assert recycling["grew_most"][0]["requests"] == 3
    assert recycling["pid"] not in pids and pids
    # The run that crossed the limit finished and was reported, like every other run: the
    # child left between two tasks, not in one (no lost worker, no killed process).
    assert len(runs) == len(kept) and {r["status"] for r in runs} == {"SUCCESS"}
    assert sum(r["pid"] == recycling["pid"] for r in runs) == 3
    assert "WorkerLostError" not in err and "exited with" not in err
    assert not [r for r in tasks.lines() if r.get("kind") == "worker_died"]


# -- the leak watch, per task name --------------------------------------------------------

STEPS = [f"shop.steps.s{i}" for i in range(10)]
LEAKING_STEP = "shop.steps.s3"


def run_steps(tmp_path: Path, runs: int, seed: int, pool: str, concurrency: int) -> list:
    rng = random.Random(seed)
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path / "worker", broker, pool=pool, concurrency=concurrency,
                   options={"leak_detection": True}) as tasks, sender(broker) as app:
        results = [app.send_task(rng.choice(STEPS), args=(n,)) for n in range(runs)]
        for result in results:
            result.get(timeout=120)
        lines = tasks.wait_for(lambda ls: len(task_lines(ls)) == runs)
    assert len(task_lines(lines)) == runs
    return [r for r in lines if r.get("kind") == "leak_suspect"]


def assert_the_leaking_task_is_named(suspects: list) -> None:
    assert suspects, "the leaking task was not flagged"
    assert {s["name"] for s in suspects} == {f"TASK {LEAKING_STEP}"}
    first = suspects[0]
    assert first["message"].startswith(f"LEAK SUSPECT | TASK {LEAKING_STEP} | +")
    assert first["per_request"] == pytest.approx(sys.getsizeof(bytearray(4096)), rel=0.25)
    top = first["sites"][0]
    assert (top["file"], top["line"]) == ("celery_tasks.py", line_of("STEP_LEAKS"))


def test_leak_watch_names_the_task_that_keeps_4kb_among_ten_sharing_code(tmp_path):
    assert_the_leaking_task_is_named(run_steps(tmp_path, 1_000, seed=3, pool="solo",
                                               concurrency=1))


@pytest.mark.slow
def test_leak_watch_in_prefork_children_names_only_the_leaking_task(tmp_path):
    assert_the_leaking_task_is_named(run_steps(tmp_path, 6_000, seed=4, pool="prefork",
                                               concurrency=2))


# -- the example ---------------------------------------------------------------------------


def test_the_example_worker_runs_and_logs_the_senders_id(tmp_path):
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path, broker, module="celery_worker"):
        sent = subprocess.run([sys.executable, str(EXAMPLES / "celery_worker.py")],
                              cwd=tmp_path / "redis", env=environment(broker, None, {}),
                              capture_output=True, text=True, timeout=120)
        assert sent.returncode == 0, sent.stderr
        log = tmp_path / "logs" / "monitoring.log"
        deadline = time.monotonic() + 60
        # The retry runs a second after the first run.
        while "TASK shop.tasks.notify | SUCCESS" not in log.read_text() \
                and time.monotonic() < deadline:
            time.sleep(0.1)
    text = log.read_text()
    assert text.count(" - order-4711 - MonitoringLogger - ") == 7
    for line in ("MEMORY | TASK shop.tasks.notify | RETRY | ",
                 "MEMORY | TASK shop.tasks.notify | SUCCESS | ",
                 "MEMORY | TASK shop.tasks.thumbnail | SUCCESS | ",
                 "WARNING - MEMORY BUDGET | TASK shop.tasks.render_report | +"):
        assert " - order-4711 - MonitoringLogger - " in text and line in text, line
    assert " - order-4711 - shop.tasks - INFO - order 4711 notified" in \
        (tmp_path / "logs" / "app.log").read_text()
