"""Fixtures for the web integration tests."""

from __future__ import annotations

import logging
from typing import Iterator

import pytest

from .support import RootRecords


@pytest.fixture
def root_records() -> Iterator[RootRecords]:
    """Collect every record propagated to the root logger (application loggers included)."""
    collector = RootRecords()
    root = logging.getLogger()
    level = root.level
    root.addHandler(collector)
    root.setLevel(logging.DEBUG)
    yield collector
    root.removeHandler(collector)
    root.setLevel(level)
