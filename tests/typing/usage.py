"""A user's code, checked with ``mypy --strict`` as a user's type checker would read our hints
(``make test``). Not a test module: nothing here runs under pytest."""

from __future__ import annotations

from fastapi import FastAPI
from flask import Flask
from typing_extensions import assert_type

import sherlock_ai
from sherlock_ai import (
    Consumer,
    LeakWatch,
    LeakWatchSettings,
    Measurement,
    MemoryTracker,
    add_consumer,
    monitor_memory,
    remove_consumer,
)
from sherlock_ai.engine.requests import OpenRequest
from sherlock_ai.integrations import RequestOptions
from sherlock_ai.integrations import Sherlock as LazySherlock
from sherlock_ai.integrations import SherlockMiddleware as LazyMiddleware
from sherlock_ai.integrations.asgi import SherlockMiddleware, instrument_app
from sherlock_ai.integrations.flask import Sherlock
from sherlock_ai.integrations.wsgi import SherlockWSGIMiddleware


@monitor_memory
def load(n: int) -> list[int]:
    return list(range(n))


@monitor_memory(min_duration=0.5, trace_malloc=False)
async def fetch(key: str) -> bytes:
    return key.encode()


class InProgress(Consumer):
    def __init__(self) -> None:
        self.value = 0

    def request_started(self, request: OpenRequest) -> None:
        self.value += 1

    def measurement_ended(self, measurement: Measurement) -> None:
        if measurement.protocol is not None:
            self.value -= 1


def main() -> None:
    numbers: list[int] = load(3)
    with MemoryTracker("block", trace_malloc=False) as tracker:
        numbers.append(4)
    measured: Measurement | None = tracker.measurement
    gauge: InProgress = add_consumer(InProgress())
    remove_consumer(gauge)
    watch: LeakWatch = LeakWatch(settings=LeakWatchSettings(trace_share=0.01))
    watch.close()
    api: FastAPI = instrument_app(FastAPI(), min_duration=0.1)
    wrapped: SherlockMiddleware = SherlockMiddleware(api, options=RequestOptions(min_duration=0.1))
    # Names loaded on first use are the classes themselves, not Any (assert_type is exact).
    assert_type(LazyMiddleware, type[SherlockMiddleware])
    assert_type(LazySherlock, type[Sherlock])
    assert_type(sherlock_ai.LeakWatch, type[LeakWatch])
    lazy = LazyMiddleware(api)
    extension = LazySherlock()
    app = Flask(__name__)
    Sherlock(app, exclude_paths=["/health"])
    wsgi: SherlockWSGIMiddleware = SherlockWSGIMiddleware(app.wsgi_app)
    setup: sherlock_ai.SherlockAI = sherlock_ai.sherlock_ai()
    print(measured, wrapped, lazy, extension, wsgi, setup, sherlock_ai.get_request_id())
