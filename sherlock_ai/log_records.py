"""Request ids on every log record."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from .request_id import get_request_id

NO_REQUEST_ID = "-"
#: The attribute in which the web middleware leaves the request's id on an exception that
#: escaped the request, for the server's traceback logged outside it.
ESCAPED_REQUEST_ID = "__sherlock_ai_request_id__"

_factory_lock = threading.Lock()


class RequestIdFilter(logging.Filter):
    """Give each record passing through a ``request_id`` attribute (``"-"`` when none).

    Attach it to any handler (uvicorn's and gunicorn's included, e.g. through ``dictConfig``
    with ``{"()": "sherlock_ai.RequestIdFilter"}``) to use ``%(request_id)s`` in its format.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = get_request_id() or _escaped_id(record) or NO_REQUEST_ID
        return True


def _escaped_id(record: logging.LogRecord) -> object:
    """The id of the request an exception logged with ``exc_info`` escaped from, if any."""
    exc_info = record.exc_info
    if exc_info and isinstance(exc_info, tuple):
        found = getattr(exc_info[1], ESCAPED_REQUEST_ID, None)
        return found if isinstance(found, str) else None
    return None


def install_request_id_factory() -> None:
    """Make every log record created from now on carry ``request_id`` (idempotent).

    Wraps the current record factory, so other libraries' factories keep working. The id is
    read when the record is created, in the context of the code that logs.
    """
    with _factory_lock:
        previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
        if getattr(previous, "_sherlock_ai", False):
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            record.request_id = get_request_id() or _escaped_id(record) or NO_REQUEST_ID
            return record

        factory._sherlock_ai = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
