"""pytest plugin: put sherlock_ai into every app a peer's test suite builds, and check its lines.

Loaded by ``peers/run.py`` with ``-p sherlock_peers`` into FastAPI's, Starlette's and Flask's own
suites; their tests are not edited. Settings come from the environment:

- ``SHERLOCK_PEERS_MODE``: ``plain``, ``leak_detection`` or ``trace_malloc`` (the options the
  integrations get: none, ``leak_detection=True``, ``trace_malloc=True``).
- ``SHERLOCK_PEERS_ECHO``: ``0`` passes ``echo_header=False`` (default ``1``).
- ``SHERLOCK_PEERS_OUT``: where the JSON summary of requests and MEMORY records is written.

Injection: every ``Starlette`` or ``FastAPI`` app gets ``instrument_app(app, **options)`` at the
end of its ``__init__``; an ASGI app handed to Starlette's ``TestClient`` that is not such an app
(a bare ASGI callable, a ``Router``) is wrapped in ``SherlockMiddleware``; every ``Flask`` app gets
``Sherlock(app, **options)``. Outside sherlock_ai's layer a counting layer records each HTTP
request with the id sherlock_ai gave it (``sherlock_ai.request_id`` in the scope or environ), so
requests are counted independently of the lines they produce.
"""

from __future__ import annotations

import collections
import gc
import importlib
import json
import logging
import os
import pkgutil
import sys
from typing import Any, Dict, List, Optional

import pytest

MODES: Dict[str, Dict[str, Any]] = {
    "plain": {},
    "leak_detection": {"leak_detection": True},
    "trace_malloc": {"trace_malloc": True},
}
REQUEST_ID_KEY = "sherlock_ai.request_id"
_SAMPLE = 25  # test ids listed per problem in the summary; the counts are complete


class Ledger:
    """Requests seen by the counting layers, MEMORY records, internal errors, per test."""

    def __init__(self) -> None:
        self.test = "<collection>"
        self.requests: List[Dict[str, Any]] = []
        self.records: List[Dict[str, Any]] = []
        self.other_lines: List[str] = []
        self.internal_errors: List[Dict[str, str]] = []

    def request(self, request_id: Optional[str], framework: str, what: str) -> None:
        self.requests.append(
            {"id": request_id, "framework": framework, "what": what, "test": self.test}
        )

    def summary(self, mode: str, echo: bool) -> Dict[str, Any]:
        per_id = collections.Counter(r["id"] for r in self.records)
        requested = collections.Counter(r["id"] for r in self.requests)
        missing = [r for r in self.requests if r["id"] is not None and r["id"] not in per_id]
        no_id = [r for r in self.requests if r["id"] is None]
        twice = [i for i, n in per_id.items() if n > 1]
        reused = [i for i, n in requested.items() if i is not None and n > 1]
        orphans = [r for r in self.records if r["id"] not in requested]
        errors = collections.Counter(
            (r["error"] or "")[:160] for r in self.records if r["status"] == "ERROR"
        )
        return {
            "mode": mode,
            "echo_header": echo,
            "requests": len(self.requests),
            "memory_records": len(self.records),
            "requests_without_record": len(missing),
            "requests_without_record_tests": _tests(missing),
            "requests_without_id": len(no_id),
            "requests_without_id_tests": _tests(no_id),
            "ids_with_several_records": len(twice),
            "ids_with_several_records_tests": _tests(
                [r for r in self.records if r["id"] in set(twice)]),
            "ids_used_by_several_requests": len(reused),
            "records_without_request": len(orphans),
            "records_without_request_tests": _tests(orphans),
            "internal_errors": self.internal_errors,
            "error_records": dict(errors.most_common(12)),
            "max_concurrent": max((r["concurrent"] for r in self.records), default=0),
            "other_monitoring_lines": len(self.other_lines),
            "other_monitoring_samples": self.other_lines[:5],
        }


def _tests(rows: List[Dict[str, Any]]) -> Dict[str, int]:
    return dict(collections.Counter(r["test"] for r in rows).most_common(_SAMPLE))


LEDGER = Ledger()


class _Collect(logging.Handler):
    """Keeps each MEMORY record sherlock_ai logs (``record.sherlock`` is its measurement)."""

    def emit(self, record: logging.LogRecord) -> None:
        m = getattr(record, "sherlock", None)
        if m is None:
            LEDGER.other_lines.append(f"{LEDGER.test}: {record.getMessage()[:300]}")
            return
        if m.kind != "memory":
            return
        LEDGER.records.append({
            "id": m.request_id or getattr(record, "request_id", None), "name": m.name,
            "status": m.status, "error": m.error, "concurrent": m.concurrent,
            "test": LEDGER.test,
        })


class _CountASGI:
    """Counts each HTTP request that no outer sherlock_ai layer owns, with its id."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:  # tests read attributes of the app they built
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        counted = scope.get("type") == "http" and REQUEST_ID_KEY not in scope
        try:
            await self.app(scope, receive, send)
        finally:
            if counted:
                what = f"{scope.get('method')} {scope.get('path')}"
                LEDGER.request(scope.get(REQUEST_ID_KEY), "asgi", what)


class _CountWSGI:
    """The same for a WSGI app; the response iterable is passed on untouched."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    def __call__(self, environ: Any, start_response: Any) -> Any:
        counted = REQUEST_ID_KEY not in environ
        try:
            return self.app(environ, start_response)
        finally:
            if counted:
                what = f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"
                LEDGER.request(environ.get(REQUEST_ID_KEY), "wsgi", what)


def _watch_internal_errors() -> None:
    """Record every call of sherlock_ai's internal-error path (each module imported it by name)."""
    import sherlock_ai
    from sherlock_ai import safety

    for info in pkgutil.walk_packages(sherlock_ai.__path__, "sherlock_ai."):
        if not info.name.endswith("__main__"):
            try:
                importlib.import_module(info.name)
            except ImportError:  # an optional integration whose library this venv lacks
                pass
    original = safety.report_internal_error

    def report_internal_error(where: str, exc: BaseException) -> None:
        LEDGER.internal_errors.append({
            "test": LEDGER.test, "where": where, "error": f"{type(exc).__name__}: {exc}"[:300]})
        original(where, exc)

    for name, module in list(sys.modules.items()):
        if (name == "sherlock_ai" or name.startswith("sherlock_ai.")) and getattr(
                module, "report_internal_error", None) is original:
            module.report_internal_error = report_internal_error


def _inject_asgi(options: Dict[str, Any]) -> None:
    try:
        from starlette.applications import Starlette
        from starlette.testclient import TestClient
    except ImportError:
        return
    from sherlock_ai.integrations.fastapi import SherlockMiddleware, instrument_app

    def instrumented(init: Any) -> Any:
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            if not getattr(self, "_sherlock_ai_instrumented", False):
                instrument_app(self, **options)
                built = self.build_middleware_stack
                self.build_middleware_stack = lambda: _CountASGI(built())
                if self.middleware_stack is not None:
                    self.middleware_stack = _CountASGI(self.middleware_stack)
        return __init__

    Starlette.__init__ = instrumented(Starlette.__init__)
    try:
        from fastapi import FastAPI
    except ImportError:
        pass
    else:  # FastAPI.__init__ does not call Starlette's
        FastAPI.__init__ = instrumented(FastAPI.__init__)

    client_init = TestClient.__init__

    def test_client_init(self: Any, app: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(app, (Starlette, _CountASGI)):
            app = _CountASGI(SherlockMiddleware(app, **options))
        client_init(self, app, *args, **kwargs)

    TestClient.__init__ = test_client_init


def _inject_flask(options: Dict[str, Any]) -> None:
    try:
        from flask import Flask
    except ImportError:
        return
    from sherlock_ai.integrations.flask import Sherlock

    init = Flask.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if "sherlock_ai" not in self.extensions:
            Sherlock(self, **options)
            self.wsgi_app = _CountWSGI(self.wsgi_app)

    Flask.__init__ = __init__


def pytest_configure(config: pytest.Config) -> None:
    mode = os.environ.get("SHERLOCK_PEERS_MODE", "")
    if mode not in MODES:
        raise pytest.UsageError(
            f"SHERLOCK_PEERS_MODE must be one of {', '.join(MODES)}, got {mode!r}")
    options = dict(MODES[mode])
    echo = os.environ.get("SHERLOCK_PEERS_ECHO", "1") != "0"
    if not echo:
        options["echo_header"] = False
    config._sherlock_peers = (mode, echo)  # type: ignore[attr-defined]
    _watch_internal_errors()
    monitoring = logging.getLogger("MonitoringLogger")
    monitoring.addHandler(_Collect())
    monitoring.setLevel(logging.INFO)
    # The suites assert on their own log capture; the records are checked here instead.
    monitoring.propagate = False
    _inject_asgi(options)
    _inject_flask(options)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Optional[pytest.Item]) -> Any:
    LEDGER.test = item.nodeid
    yield
    LEDGER.test = "<between tests>"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    settings = getattr(session.config, "_sherlock_peers", None)
    out = os.environ.get("SHERLOCK_PEERS_OUT")
    if settings is None or not out:
        return
    LEDGER.test = "<session end>"
    gc.collect()  # responses nobody closed end at the latest when collected
    # ... on the finisher thread: wait for it, or the last ones are counted as missing.
    from sherlock_ai.integrations.collected import wait_for_collected

    wait_for_collected()
    with open(out, "w", encoding="utf-8") as f:
        json.dump(LEDGER.summary(*settings), f, indent=1)
