"""Web integrations: request ids and one MEMORY line per request.

- ASGI (FastAPI, Starlette, any ASGI app): :mod:`sherlock_ai.integrations.asgi`
  (``SherlockMiddleware``, ``instrument_app``), also as :mod:`sherlock_ai.integrations.fastapi`.
- WSGI (any WSGI app): :mod:`sherlock_ai.integrations.wsgi` (``SherlockWSGIMiddleware``).
- Flask: :mod:`sherlock_ai.integrations.flask` (``Sherlock``).
- Django: the app :mod:`sherlock_ai.integrations.django` (``SherlockMiddleware``,
  ``RequestIdFilter``, ``settings.SHERLOCK_AI``).
- Celery: :mod:`sherlock_ai.integrations.celery` (``instrument_celery``; imports Celery).
- Outgoing calls with the request id (httpx, requests):
  :mod:`sherlock_ai.integrations.outgoing` (``propagate_request_id``).
- uvicorn and gunicorn log configurations: :mod:`sherlock_ai.integrations.server_logs`.
- Their options: :mod:`sherlock_ai.integrations.options` (``RequestOptions``); request
  observers: :mod:`sherlock_ai.integrations.observers` (``RequestObserver``).

Importing this package imports no web framework; the classes above are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._common import OTHER_METHOD, REQUEST_ID_KEY, ROUTE_KEY, UNMATCHED_ROUTE, status_class
from .observers import RequestObserver, add_request_observer, remove_request_observer
from .options import RequestKeywords, RequestOptions

_LAZY = {
    "SherlockMiddleware": "asgi",
    "instrument_app": "asgi",
    "SherlockWSGIMiddleware": "wsgi",
    "Sherlock": "flask",
    "uvicorn_log_config": "server_logs",
    "gunicorn_logconfig_dict": "server_logs",
    "GUNICORN_ACCESS_LOG_FORMAT": "server_logs",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "GUNICORN_ACCESS_LOG_FORMAT",
    "OTHER_METHOD",
    "REQUEST_ID_KEY",
    "ROUTE_KEY",
    "RequestKeywords",
    "RequestObserver",
    "RequestOptions",
    "Sherlock",
    "SherlockMiddleware",
    "SherlockWSGIMiddleware",
    "UNMATCHED_ROUTE",
    "add_request_observer",
    "gunicorn_logconfig_dict",
    "instrument_app",
    "remove_request_observer",
    "status_class",
    "uvicorn_log_config",
]
