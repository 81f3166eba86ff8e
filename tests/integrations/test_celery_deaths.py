"""Worker deaths in a real Celery worker (Redis broker, ``celery worker`` with 2 prefork
children): a child killed with SIGKILL mid-task is told once, by the worker's main process,
with the task, the id of the request that sent it and the signal; children leaving gracefully
(``--max-tasks-per-child``, a warm shutdown) tell none."""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import List, Optional

import pytest
from celery.concurrency.asynpool import AsynPool
from celery.exceptions import WorkerLostError

from celery_support import redis_broker, task_lines, worker
from sherlock_ai import request_id_context
from sherlock_ai.deaths.record import read_record
from sherlock_ai.deaths.watch import SUPERVISOR_GRACE_S

from .test_celery import sender


def died(lines: List[dict]) -> List[dict]:
    return [r for r in lines if r.get("kind") == "worker_died"]


def holding(records: Path, task: str, after_s: float, timeout: float = 60.0) -> int:
    """The pid of the child whose record has ``task`` in flight, once its watcher took an
    RSS reading ``after_s`` seconds or more after the run began."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in records.glob("*.rec"):
            view = read_record(path)
            started = [e.started_at for e in view.in_flight
                       if f"{e.kind} {e.name}" == f"TASK {task}"] if view else []
            if started and view.readings[-1][0] >= started[0] + after_s:
                return view.pid
        time.sleep(0.05)
    raise AssertionError(f"no record has TASK {task} in flight with a reading after it began")


def test_siblings_give_the_main_process_longer_than_its_pool_may_take_to_reap():
    # A child whose exit event came before it could be waited on is reaped at this timer.
    (interval,) = AsynPool.timers.fget(SimpleNamespace(maintain_pool=None)).values()
    assert interval < SUPERVISOR_GRACE_S


@pytest.mark.servers
def test_a_prefork_child_killed_mid_task_is_told_once_with_task_id_and_signal(tmp_path):
    request_id = f"celery-death-{uuid.uuid4().hex[:12]}"
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path / "worker", broker) as tasks, sender(broker) as app:
        with request_id_context(request_id):
            result = app.send_task("shop.hold", args=(40, 60))
        # Half a second is time enough to allocate the 40 MB it holds.
        pid = holding(tasks.logs / ".workers", "shop.hold", after_s=0.5)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerLostError):
            result.get(timeout=60)
        lines = tasks.wait_for(lambda ls: bool(died(ls)), timeout=10)
        # Siblings look once a second and leave the live main process its grace.
        time.sleep(SUPERVISOR_GRACE_S + 2)
        assert app.send_task("shop.add", args=(1, 1)).get(timeout=60) == 2  # a new child
        # A run's line is written after its result is stored.
        lines = tasks.wait_for(lambda ls: bool(task_lines(ls, "shop.add")))
    death, = died(lines)
    assert death["pid"] == pid and death["signal"] == "SIGKILL"
    assert death["told_by"] == f"celery main process pid {tasks.proc.pid}"
    in_flight, = death["in_flight"]
    assert (in_flight["method"], in_flight["name"], in_flight["request_id"]) == \
        ("TASK", "shop.hold", request_id)
    assert in_flight["rss_change"] >= 35 << 20, "the 40 MB the run held are not in its figure"
    assert death["message"].startswith(
        f"WORKER DIED | pid {pid} | SIGKILL | in flight: TASK shop.hold (id {request_id}, ")
    # The killed run wrote no MEMORY line; the one after it did, with a fresh id.
    runs = task_lines(lines)
    assert [r["name"] for r in runs] == ["TASK shop.add"]
    assert runs[0]["request_id"] != request_id


def wait_for_records(records: Path, count: int, timeout: float = 30.0) -> Optional[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = len(list(records.glob("*.rec")))
        if found == count:
            return found
        time.sleep(0.1)
    return len(list(records.glob("*.rec")))


@pytest.mark.servers
def test_children_recycled_after_each_task_and_a_warm_shutdown_tell_no_death(tmp_path):
    with redis_broker(tmp_path / "redis") as broker, \
            worker(tmp_path / "worker", broker,
                   arguments=("--max-tasks-per-child", "1")) as tasks, sender(broker) as app:
        pids = {app.send_task("shop.pid").get(timeout=60) for _ in range(6)}
        assert len(pids) == 6, "each child runs one task, then the pool replaces it"
        # Left: the main process's record only (the children's closed as they left).
        assert wait_for_records(tasks.logs / ".workers", 1) == 1
        time.sleep(SUPERVISOR_GRACE_S + 2)  # every watcher looked, past any grace
        lines = tasks.lines()
        assert len(task_lines(lines, "shop.pid")) == 6
    assert died(tasks.lines()) == []
    assert not list((tasks.logs / ".workers").glob("*.rec")), "a graceful exit left a record"
