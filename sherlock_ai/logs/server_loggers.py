"""sherlock_ai's log files on the loggers of the server running the app.

Servers configure their logging before they import the app: uvicorn's CLI gives ``uvicorn``
and ``uvicorn.access`` handlers of their own and stops their records there (``propagate``
off), gunicorn does the same with ``gunicorn.error`` and ``gunicorn.access``, and werkzeug's
development server writes ANSI colour codes into its access lines. :func:`join_servers`,
called by ``sherlock_ai()``, adapts what it finds; nothing here imports a server.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from types import FrameType
from typing import Any, Callable, List, Optional

from ..request_id import is_valid_request_id
from .records import RequestIdFilter

#: Loggers of servers whose records may stop before the root logger.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error",
                  "gunicorn.access")

#: uvicorn's own console format of access lines (``uvicorn.config.LOGGING_CONFIG``).
UVICORN_DEFAULT_ACCESS_FORMAT = (
    '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
)
#: The same with the request's id after the client address.
UVICORN_CONSOLE_ACCESS_FORMAT = (
    '%(levelprefix)s %(client_addr)s - %(request_id)s - "%(request_line)s" %(status_code)s'
)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_REQUEST_ID_KEY = "sherlock_ai.request_id"  # set in the environ by the WSGI middleware

Undo = Callable[[], None]


def join_servers(file_handlers: List[logging.Handler], request_ids: RequestIdFilter) -> List[Undo]:
    """Give the servers' closed loggers ``file_handlers`` (the files that collect every
    record), show the id in uvicorn's default console access line, and clean werkzeug's
    lines. Returns what undoes it."""
    undo: List[Undo] = []
    existing = logging.Logger.manager.loggerDict
    for name in SERVER_LOGGERS:
        logger = existing.get(name)
        if not isinstance(logger, logging.Logger) or logger.propagate or not logger.handlers:
            continue  # its records reach the root's handlers, or it was silenced on purpose
        for handler in logger.handlers:
            undo += _uvicorn_console_with_ids(handler, request_ids)
        for handler in file_handlers:
            logger.addHandler(handler)
            undo.append(functools.partial(logger.removeHandler, handler))
    werkzeug = logging.getLogger("werkzeug")
    lines = WerkzeugLines()
    werkzeug.addFilter(lines)
    undo.append(lambda: werkzeug.removeFilter(lines))
    return undo


def _uvicorn_console_with_ids(handler: logging.Handler, request_ids: RequestIdFilter) -> List[Undo]:
    formatter: Any = handler.formatter
    kind = type(formatter)
    if (kind.__module__, kind.__name__) != ("uvicorn.logging", "AccessFormatter") or (
        getattr(formatter, "_fmt", None) != UVICORN_DEFAULT_ACCESS_FORMAT
    ):
        return []  # a format of the user's own (``--log-config``) is left as it is
    handler.setFormatter(kind(fmt=UVICORN_CONSOLE_ACCESS_FORMAT, datefmt=formatter.datefmt,
                              use_colors=formatter.use_colors))
    handler.addFilter(request_ids)

    def undo() -> None:
        handler.setFormatter(formatter)
        handler.removeFilter(request_ids)

    return [undo]


def root_console(root: logging.Logger) -> Optional[logging.Handler]:
    """A console handler of the root logger (a ``StreamHandler`` writing to stderr or stdout:
    ``logging.basicConfig``'s, the ``console`` of ``gunicorn_logconfig_dict``, a
    ``dictConfig``'s), if it has one."""
    consoles = (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)
    for handler in root.handlers:
        if (isinstance(handler, logging.StreamHandler)
                and not isinstance(handler, logging.FileHandler)
                and any(handler.stream is console for console in consoles)):
            return handler
    return None


class WerkzeugLines(logging.Filter):
    """On the ``werkzeug`` logger: its lines lose the ANSI colour codes werkzeug puts in
    them, and the lines its request handler writes (access lines, tracebacks) get the id
    the WSGI middleware left in that request's environ. werkzeug writes its access line
    when the response starts, outside the middleware's call, where no id is current."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "\x1b" in record.msg:
            record.msg = _ANSI.sub("", record.msg)
        args = record.args
        if isinstance(args, tuple) and any(isinstance(a, str) and "\x1b" in a for a in args):
            record.args = tuple(_ANSI.sub("", a) if isinstance(a, str) else a for a in args)
        request_id = _serving_request_id()
        if request_id is not None:
            record.request_id = request_id
        return True


def _serving_request_id() -> Optional[str]:
    # werkzeug passes neither the handler nor its environ to logging: find the handler
    # among the callers (a few frames up). Only werkzeug's records pay for this.
    serving = sys.modules.get("werkzeug.serving")
    if serving is None:
        return None
    handler_class = serving.WSGIRequestHandler
    frame: Optional[FrameType] = sys._getframe(2)
    for _ in range(16):
        if frame is None:
            return None
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, handler_class):
            environ = getattr(candidate, "environ", None) or {}
            request_id = environ.get(_REQUEST_ID_KEY)
            return request_id if is_valid_request_id(request_id) else None
        frame = frame.f_back
    return None
