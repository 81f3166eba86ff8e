"""What sherlock_ai's own lines are rendered from, and their text renderer.

A line is rendered from one record of its figures, :data:`LineFields` (a request that only the
line reads has these without a ``Measurement`` being built), into the text of a ``%``-style
format (:class:`TextLine`, here) or a JSON object (:func:`~.json_lines.json_line`). The set-up
chooses one of the two when it is made (see :mod:`sherlock_ai.logs.writer`).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

if TYPE_CHECKING:
    from ..engine.measurement import Measurement

#: A measurement's figures in :class:`~sherlock_ai.engine.span.Figures` order (a ``Figures``
#: is one): duration, rss, rss_change, traced, traced_peak, concurrent.
FigureValues = Tuple[float, Optional[int], Optional[int], Optional[int], Optional[int], int]
#: What a line shows of its measurement: ``(kind, name, status, figures, error, attributes)``.
LineFields = Tuple[str, str, str, FigureValues, Optional[str], Dict[str, Any]]

DEFAULT_FORMAT = "%(asctime)s - %(request_id)s - %(name)s - %(levelname)s - %(message)s"
DEFAULT_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def fields_of(m: Measurement) -> LineFields:
    """The line fields of a measurement."""
    figures = (m.duration, m.rss, m.rss_change, m.traced, m.traced_peak, m.concurrent)
    return (m.kind, m.name, m.status, figures, m.error, m.attributes)


class SecondStamp:
    """A time stamp's text for whole seconds (``render(second)``), rendered once per second:
    lines come many per second and all show the same text."""

    __slots__ = ("render", "last")

    def __init__(self, render: Callable[[int], str]) -> None:
        self.render = render
        self.last: Tuple[int, str] = (-1, "")

    def text(self, second: int) -> str:
        last = self.last
        if last[0] != second:
            last = self.last = (second, self.render(second))
        return last[1]


# Record attributes a text format of our lines may use (what our lines have without a record).
_FIELDS = {"asctime", "request_id", "name", "levelname", "levelno", "message", "process",
           "thread", "threadName", "funcName", "pathname", "filename", "module", "lineno"}
_FIELD = re.compile(r"%\((\w+)\)")


class TextLine:
    """The text of one of our lines in a ``%``-style format that uses only the fields in
    :data:`_FIELDS` (see :func:`text_line`), ending in a newline. The default format is
    rendered with one f-string."""

    def __init__(self, fmt: str, stamp: SecondStamp) -> None:
        self.fmt = fmt
        self.default = fmt == DEFAULT_FORMAT
        self.stamp = stamp

    def __call__(self, created: float, name: str, level: int, levelname: str, message: str,
                 request_id: str, pid: int, fields: LineFields) -> str:
        asctime = self.stamp.text(int(created))
        if self.default:
            return f"{asctime} - {request_id} - {name} - {levelname} - {message}\n"
        thread = threading.current_thread()
        return self.fmt % {
            "asctime": asctime, "request_id": request_id, "name": name,
            "levelname": levelname, "levelno": level, "message": message, "process": pid,
            "thread": thread.ident, "threadName": thread.name, "funcName": fields[1],
            "pathname": "sherlock_ai", "filename": "sherlock_ai", "module": "sherlock_ai",
            "lineno": 0,
        } + "\n"


def text_line(formatter: logging.Formatter) -> Optional[TextLine]:
    """The :class:`TextLine` of ``formatter``'s format, or ``None`` when it cannot render it
    without a record (another style, other fields, ``%f`` in the date format)."""
    fmt, datefmt = formatter._fmt, formatter.datefmt
    if (type(formatter._style) is not logging.PercentStyle or not fmt
            or not set(_FIELD.findall(fmt)) <= _FIELDS or not datefmt or "%f" in datefmt):
        return None
    stamp = getattr(formatter, "stamp", None) or _stamp(datefmt, formatter.converter)
    return TextLine(fmt, stamp)


def _stamp(datefmt: str, converter: Callable[..., Any]) -> SecondStamp:
    return SecondStamp(lambda second: time.strftime(datefmt, converter(second)))


class TextFormatter(logging.Formatter):
    """The set-up's ``logging.Formatter`` for other records in our text files, sharing the
    once-per-second time stamp of the :class:`TextLine` of the same format."""

    def __init__(self, fmt: str, datefmt: str) -> None:
        super().__init__(fmt, datefmt)
        self.stamp = _stamp(datefmt, self.converter) if datefmt and "%f" not in datefmt \
            else None

    def formatTime(self, record: logging.LogRecord, datefmt: Optional[str] = None) -> str:
        if self.stamp is None or datefmt is not None and datefmt != self.datefmt:
            return super().formatTime(record, datefmt)
        return self.stamp.text(int(record.created))
