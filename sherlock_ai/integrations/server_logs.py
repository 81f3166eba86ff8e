"""Logging configurations that put the request id in uvicorn's and gunicorn's own log lines.

Nothing here imports a server: the dicts name their classes as strings, for
``logging.config.dictConfig`` (which both servers call) to import.
"""

from __future__ import annotations

import copy
from typing import Any, Dict

from ..logs.render import DEFAULT_DATE_FORMAT, DEFAULT_FORMAT

#: uvicorn's access line in sherlock_ai's layout: ``{time} - {request_id} - uvicorn.access -
#: INFO - 127.0.0.1:50000 - "GET /items/3 HTTP/1.1" 200``.
UVICORN_ACCESS_FORMAT = (
    '%(asctime)s - %(request_id)s - %(name)s - %(levelname)s - %(client_addr)s - '
    '"%(request_line)s" %(status_code)s'
)

#: gunicorn's ``access_log_format`` with the id the WSGI middleware leaves in the environ.
#: gunicorn writes its access line after the response is closed, outside the request's
#: context, so the id comes from the environ rather than from ``%(request_id)s``.
GUNICORN_ACCESS_LOG_FORMAT = (
    '%(h)s - %({sherlock_ai.request_id}e)s - "%(r)s" %(s)s %(b)s "%(a)s" %(L)ss'
)

_REQUEST_ID_FILTER = {"request_id": {"()": "sherlock_ai.RequestIdFilter"}}


def uvicorn_log_config(
    default_format: str = DEFAULT_FORMAT,
    access_format: str = UVICORN_ACCESS_FORMAT,
    date_format: str = DEFAULT_DATE_FORMAT,
) -> Dict[str, Any]:
    """uvicorn's default logging (errors to stderr, access lines to stdout) with
    ``%(request_id)s`` in both formats: pass it as ``uvicorn.run(app, log_config=...)`` or
    ``uvicorn.Config(log_config=...)``. The id is the request's for lines logged while the
    request runs (access lines are), the escaped request's id for the traceback uvicorn logs
    after an unhandled exception has left the middleware, and ``-`` otherwise (start-up)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": copy.deepcopy(_REQUEST_ID_FILTER),
        "formatters": {
            "default": {
                "()": "uvicorn.logging.DefaultFormatter",
                "fmt": default_format,
                "datefmt": date_format,
                "use_colors": False,
            },
            "access": {
                "()": "uvicorn.logging.AccessFormatter",
                "fmt": access_format,
                "datefmt": date_format,
                "use_colors": False,
            },
        },
        "handlers": {
            "default": {
                "formatter": "default",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
                "filters": ["request_id"],
            },
            "access": {
                "formatter": "access",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "filters": ["request_id"],
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
    }


def gunicorn_logconfig_dict(
    log_format: str = DEFAULT_FORMAT, date_format: str = DEFAULT_DATE_FORMAT
) -> Dict[str, Any]:
    """gunicorn's ``logconfig_dict`` setting (error log to stderr, access log to stdout) with
    ``%(request_id)s`` in the format. Use it with ``access_log_format =``
    :data:`GUNICORN_ACCESS_LOG_FORMAT`, which carries the id inside the access message."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": copy.deepcopy(_REQUEST_ID_FILTER),
        "formatters": {
            "sherlock_ai": {"format": log_format, "datefmt": date_format},
        },
        "handlers": {
            "error_console": {
                "class": "logging.StreamHandler",
                "formatter": "sherlock_ai",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            },
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "sherlock_ai",
                "filters": ["request_id"],
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"],
                               "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
        },
    }
