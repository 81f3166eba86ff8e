"""Shared fixtures: every test starts with sherlock_ai's logging set-up removed and no id."""

from __future__ import annotations

import logging
import time
from typing import Iterator, List

import pytest

import process_tree
import sherlock_ai
from sherlock_ai import safety

_RUN = process_tree.mark_children()


class RecordCollector(logging.Handler):
    """Keeps the real LogRecords that reach it, as they were created (the one record
    collector of the tests: the ``records`` and ``root_records`` fixtures)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def named(self, logger: str) -> List[logging.LogRecord]:
        return [r for r in self.records if r.name == logger]

    def memory(self) -> List[logging.LogRecord]:
        return [r for r in self.records if r.getMessage().startswith("MEMORY | ")]

    def messages(self, prefix: str = "") -> List[str]:
        return [r.getMessage() for r in self.records if r.getMessage().startswith(prefix)]

    def wait_for(self, count: int, prefix: str = "MEMORY | ", timeout: float = 10.0) -> List[str]:
        """The messages starting with ``prefix`` once there are ``count`` of them (lines of
        collected responses are written by a thread of their own), or those there are after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while len(self.messages(prefix)) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.messages(prefix)


@pytest.fixture(autouse=True)
def _no_process_outlives_its_test() -> Iterator[None]:
    """Fail the test that left a process it started (or one started by it) running."""
    yield
    escaped = process_tree.escaped_processes(_RUN)
    if escaped:
        process_tree.kill(escaped)
        pytest.fail(f"processes {escaped} started by this test were still running after it")


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    sherlock_ai.clear_request_id()
    # Each failing site is reported once per process: each test starts with none reported,
    # so that what it sees does not depend on the tests run before it.
    safety._reported.clear()
    yield
    sherlock_ai.SherlockAI.cleanup()
    sherlock_ai.clear_request_id()


@pytest.fixture
def records() -> Iterator[RecordCollector]:
    """Collect every record of the MonitoringLogger and PerformanceLogger. Records carry
    request ids, as in a service whose set-up installed the record factory (a middleware
    alone changes nothing of logging)."""
    sherlock_ai.install_request_id_factory()
    collector = RecordCollector()
    loggers = [logging.getLogger(n) for n in ("MonitoringLogger", "PerformanceLogger")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(collector)
        lg.setLevel(logging.DEBUG)
    yield collector
    for lg, level in saved:
        lg.removeHandler(collector)
        lg.setLevel(level)


@pytest.fixture
def root_records() -> Iterator[RecordCollector]:
    """Collect every record propagated to the root logger (application loggers included),
    with request ids (see ``records``); the record factory is restored after."""
    factory = logging.getLogRecordFactory()
    sherlock_ai.install_request_id_factory()
    collector = RecordCollector()
    root = logging.getLogger()
    level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    yield collector
    root.removeHandler(collector)
    root.setLevel(level)
    logging.setLogRecordFactory(factory)
