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
- Their options: :mod:`sherlock_ai.integrations.options` (``RequestOptions``).

Consumers of their measurements (an "in progress" gauge...) register with
:func:`sherlock_ai.add_consumer`.

Importing this package imports no web framework; the classes above are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .keys import REQUEST_ID_KEY, ROUTE_KEY
from .measured import OTHER_METHOD, UNMATCHED_ROUTE
from .options import RequestKeywords, RequestOptions

if TYPE_CHECKING:
    # What __getattr__ below imports on first use, typed for users' type checkers.
    from .asgi import SherlockMiddleware, instrument_app
    from .flask import Sherlock
    from .server_logs import GUNICORN_ACCESS_LOG_FORMAT, gunicorn_logconfig_dict, uvicorn_log_config
    from .wsgi import SherlockWSGIMiddleware

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
    "RequestOptions",
    "Sherlock",
    "SherlockMiddleware",
    "SherlockWSGIMiddleware",
    "UNMATCHED_ROUTE",
    "gunicorn_logconfig_dict",
    "instrument_app",
    "uvicorn_log_config",
]
