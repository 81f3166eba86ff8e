"""Request ids on every log record."""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

from ..request_id import get_request_id

NO_REQUEST_ID = "-"
#: The attribute in which the web middleware leaves the request's id on an exception that
#: escaped the request, for the server's traceback logged outside it.
ESCAPED_REQUEST_ID = "__sherlock_ai_request_id__"

_factory_lock = threading.Lock()

# Where the record factory keeps the id until a formatter asks for ``request_id``.
_ID_KEY = "_sherlock_request_id"


_get_message = logging.LogRecord.getMessage


class _RequestIdDefault:
    """``record.request_id`` for a record whose logger call gave none: the id taken when the
    record was made. A non-data descriptor, so an instance attribute (``extra=``) wins."""

    def __get__(self, record: Any, owner: Any = None) -> Any:
        if record is None:
            return self
        return record.__dict__.get(_ID_KEY, NO_REQUEST_ID)


class RequestIdRecord(logging.LogRecord):
    """The log record made once :func:`install_request_id_factory` ran.

    The id is kept under a private name, not in ``record.__dict__["request_id"]``: ``Logger.
    makeRecord`` refuses an ``extra={"request_id": ...}`` that would overwrite an attribute
    the factory set, so code passing its own id kept working only without a factory.
    ``getMessage()``, which every formatter calls before it formats, puts the id where
    ``%(request_id)s`` looks (the record's ``__dict__``) unless the caller gave one.
    """

    request_id = _RequestIdDefault()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        logging.LogRecord.__init__(self, *args, **kwargs)
        self._sherlock_request_id = current_id(self)

    def getMessage(self) -> str:
        values = self.__dict__
        if "request_id" not in values:
            values["request_id"] = values.get(_ID_KEY, NO_REQUEST_ID)
        return _get_message(self)


class RequestIdFilter(logging.Filter):
    """Give each record passing through a ``request_id`` attribute (``"-"`` when none).

    Attach it to any handler (uvicorn's and gunicorn's included, e.g. through ``dictConfig``
    with ``{"()": "sherlock_ai.RequestIdFilter"}``) to use ``%(request_id)s`` in its format.
    A ``request_id`` the logging call passed (``extra=``) is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        values = record.__dict__
        if "request_id" not in values:
            values["request_id"] = values.get(_ID_KEY) or current_id(record)
        return True


def current_id(record: logging.LogRecord) -> str:
    """The id a record made now carries: the current request's, else that of the request its
    exception escaped from, else ``"-"``."""
    return get_request_id() or _escaped_id(record) or NO_REQUEST_ID


def _escaped_id(record: logging.LogRecord) -> Optional[str]:
    """The id of the request an exception logged with ``exc_info`` escaped from, if any."""
    exc_info = record.exc_info
    if exc_info and isinstance(exc_info, tuple):
        found = getattr(exc_info[1], ESCAPED_REQUEST_ID, None)
        return found if isinstance(found, str) else None
    return None


def install_request_id_factory() -> None:
    """Make every log record created from now on carry ``request_id`` (idempotent).

    The id is read when the record is created, in the context of the code that logs. A
    record logged with ``extra={"request_id": value}`` keeps ``value``, as without sherlock_ai.
    Another library's factory installed earlier keeps working: its records get the id too.
    """
    with _factory_lock:
        previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
        if previous is RequestIdRecord or getattr(previous, "_sherlock_ai", False):
            return
        if previous is logging.LogRecord:
            logging.setLogRecordFactory(RequestIdRecord)
            _factory_changed()
            return

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if isinstance(record, RequestIdRecord):
                return record  # our factory again, under another that wrapped it
            record.__dict__[_ID_KEY] = current_id(record)
            if type(record) is logging.LogRecord:
                record.__class__ = RequestIdRecord
            else:
                # A record class of its own: set the attribute, as before (``extra=
                # {"request_id": ...}`` then conflicts, as with any attribute a factory sets).
                record.request_id = record.__dict__[_ID_KEY]
            return record

        factory._sherlock_ai = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
        _factory_changed()


def _factory_changed() -> None:
    from .writer import factory_changed

    factory_changed()
