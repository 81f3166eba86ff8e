"""Measurement lines written straight to sherlock_ai's own files and console.

When nothing but the handlers ``sherlock_ai()`` installed listens to a measurement's logger,
its line is rendered here and written to them directly: the same text the logging path
writes, without a ``LogRecord``, ``Logger.handle``, filters and formatter dispatch. Anything
else listening (a handler or filter of the user's on the logger or the root, another record
factory, a formatter set on our handlers) sends the line through ``logging`` as before.

"Only ours listen" is a snapshot per logger: the handler and filter lists of the logger and
the root, ``propagate``, ``disabled`` and the record factory, compared for each line in one
tuple comparison (the lists element by element, handlers and filters by identity), and a
generation bumped by every set-up and by ``setFormatter``/``addFilter``/
``removeFilter`` on our handlers. Levels (the loggers', the handlers', ``logging.disable``)
are read for each line, as ``logging`` does.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from ..request_id import request_id_var
from .records import NO_REQUEST_ID, RequestIdRecord

if TYPE_CHECKING:
    from ..engine.measurement import Measurement

#: A measurement's figures in :class:`~sherlock_ai.engine.span.Figures` order (a ``Figures``
#: is one): duration, rss, rss_change, traced, traced_peak, concurrent.
FigureValues = Tuple[float, Optional[int], Optional[int], Optional[int], Optional[int], int]
#: What a measurement line shows of its measurement: ``(kind, name, status, figures, error,
#: attributes)``. A request whose line is its only consumer has these without a
#: ``Measurement`` being built.
LineFields = Tuple[str, str, str, FigureValues, Optional[str], Dict[str, Any]]


def fields_of(m: Measurement) -> LineFields:
    """The line fields of a measurement."""
    figures = (m.duration, m.rss, m.rss_change, m.traced, m.traced_peak, m.concurrent)
    return (m.kind, m.name, m.status, figures, m.error, m.attributes)

#: What a handler the set-up installed carries: the formatter and the filter it was given.
MARK = "_sherlock_direct"

# Lines of one process are rendered and written under this lock, so each file gets them in
# the order their time stamps were taken. Taken before a handler's own lock, never after.
order_lock = threading.Lock()
_pid = os.getpid()
_generation = 0
#: Where the direct path takes a line's time (``LogRecord`` takes ``time.time()`` too).
clock = time.time
_level_names = logging._levelToName  # type: ignore[attr-defined]
monotonic = time.monotonic


def changed() -> None:
    """Something the snapshots depend on changed: they are rebuilt at their next line."""
    global _generation
    _generation += 1


class _Snapshot:
    __slots__ = ("generation", "state", "handlers", "root_handlers", "filters", "root_filters",
                 "propagate", "disabled", "factory", "targets", "writes", "encode", "render",
                 "default_text")

    def __init__(self, logger: logging.Logger) -> None:
        root = logging.root
        self.generation = _generation
        self.handlers = list(logger.handlers)
        self.root_handlers = list(root.handlers)
        self.filters = list(logger.filters)
        self.root_filters = list(root.filters)
        self.propagate = logger.propagate
        self.disabled = logger.disabled
        self.factory = logging.getLogRecordFactory()
        #: What :func:`write` compares for each line (in one tuple comparison, made in C).
        self.state = (self.handlers, self.root_handlers, self.filters, self.root_filters,
                      self.propagate, self.disabled, self.factory)
        self.targets: Tuple[logging.Handler, ...] = ()
        #: Per target: the handler, and its ``write_bytes`` when it takes UTF-8 bytes, else
        #: ``None`` (its ``write`` takes the text).
        self.writes: Tuple[Tuple[logging.Handler, Any], ...] = ()
        self.encode = False  # whether some target takes bytes
        self.render: Optional[Callable[..., str]] = None
        #: Whether the line is the default text format (rendered inline, without the
        #: measurement); any other renderer reads the measurement.
        self.default_text = False
        chain = self.handlers + (self.root_handlers if logger.propagate else [])
        if (logger.parent is not root or self.filters or self.root_filters or self.disabled
                or self.factory is not RequestIdRecord or not chain):
            return
        formatter = None
        for handler in chain:
            mark = getattr(handler, MARK, None)
            if mark is None or handler.formatter is not mark[0] or handler.filters != [mark[1]]:
                return
            if formatter is None:
                formatter = mark[0]
            elif formatter is not mark[0]:
                return
        self.render = _renderer(getattr(formatter, "inner", None))
        if self.render is not None:
            self.default_text = getattr(self.render, "default", False)
            self.targets = tuple(chain)
            self.writes = tuple(
                (h, getattr(h, "write_bytes", None) if getattr(h, "encoding", None) == "utf-8"
                 else None) for h in chain)
            self.encode = any(write_bytes is not None for _, write_bytes in self.writes)


_snapshots: Dict[str, _Snapshot] = {}


class DirectHandler:
    """Mixin of the handlers the set-up installs: changing their formatter or filters
    invalidates the snapshots (their level is read for each line anyway)."""

    def setFormatter(self, fmt: Optional[logging.Formatter]) -> None:
        super().setFormatter(fmt)  # type: ignore[misc]
        changed()

    def addFilter(self, filter: Any) -> None:  # noqa: A002 - logging's own name
        super().addFilter(filter)  # type: ignore[misc]
        changed()

    def removeFilter(self, filter: Any) -> None:  # noqa: A002
        super().removeFilter(filter)  # type: ignore[misc]
        changed()


def write(logger: logging.Logger, level: int, message: str, measurement: Measurement) -> bool:
    """Write ``message`` as ``logger``'s record carrying ``measurement`` would be written, if
    only our handlers listen (the caller checked ``logger.isEnabledFor(level)``). ``False``:
    use the logging path."""
    snapshot = listening(logger)
    return snapshot is not None and write_line(
        snapshot, logger, level, message,
        None if snapshot.default_text else fields_of(measurement))


def listening(logger: logging.Logger) -> Optional[_Snapshot]:
    """``logger``'s snapshot when only our handlers listen to it (its line may be written
    with :func:`write_line`), else ``None`` (use the logging path)."""
    snapshot = _snapshots.get(logger.name)
    root = logging.root
    # Whether anything the snapshot depends on changed: one comparison per line.
    if snapshot is None or snapshot.generation != _generation or snapshot.state != (
            logger.handlers, root.handlers, logger.filters, root.filters, logger.propagate,
            logger.disabled, logging.getLogRecordFactory()):
        snapshot = _snapshots[logger.name] = _Snapshot(logger)
    return snapshot if snapshot.render is not None else None


def write_line(snapshot: _Snapshot, logger: logging.Logger, level: int, message: str,
               fields: Optional[LineFields]) -> bool:
    """Write the line to the snapshot's handlers (``fields`` may be ``None`` when
    ``snapshot.default_text``: that line does not show them). ``False``: the format failed,
    use the logging path."""
    render = snapshot.render
    request_id = request_id_var.get() or NO_REQUEST_ID
    # getLevelName()'s own first step, without its call.
    levelname = _level_names.get(level) or logging.getLevelName(level)
    with order_lock:
        if snapshot.default_text:  # _TextLine of DEFAULT_FORMAT, inline: the common line
            created = clock()
            cached = render._second  # type: ignore[union-attr]
            asctime = (cached[1] if cached[0] == int(created)
                       else render.asctime(created))  # type: ignore[union-attr]
            text = f"{asctime} - {request_id} - {logger.name} - {levelname} - {message}\n"
        else:
            try:
                text = render(clock(), logger.name, level, levelname,  # type: ignore[misc]
                              message, request_id, fields)
            except Exception:  # noqa: BLE001 - a format that fails: logging reports it
                return False
        # Encoded once and one clock read for every file of the line, not once per file.
        data = None
        if snapshot.encode:
            try:
                data = text.encode("utf-8")
            except UnicodeError:
                pass  # each file's write() reports it as a lost line, as on the logging path
        now = monotonic()
        for handler, write_bytes in snapshot.writes:
            if level >= handler.level:
                if write_bytes is None or data is None:
                    handler.write(text)  # type: ignore[attr-defined]
                else:
                    write_bytes(data, now)
    return True


def takes_direct_path(logger: logging.Logger) -> bool:
    """Whether ``logger``'s measurement lines are written directly now (only the set-up's own
    handlers listen), rather than through ``logging``: what benchmarks check before they
    publish the direct path's cost."""
    snapshot = _Snapshot(logger)
    return snapshot.render is not None


# Record attributes a text format may use on this path (others send it through logging).
_FIELDS = {"asctime", "request_id", "name", "levelname", "levelno", "message", "process",
           "thread", "threadName", "funcName", "pathname", "filename", "module", "lineno"}
_FIELD = re.compile(r"%\((\w+)\)")


def _renderer(formatter: Optional[logging.Formatter]) -> Optional[Callable[..., str]]:
    if formatter is None:
        return None
    if type(formatter).__name__ == "JsonFormatter" and type(formatter).__module__.endswith(
            "logs.json_lines"):
        from .json_lines import json_line

        return lambda created, name, level, levelname, message, rid, fields: json_line(
            created, levelname, name, _pid, message, rid, fields, "}\n")
    fmt, datefmt = formatter._fmt, formatter.datefmt  # type: ignore[attr-defined]
    if (type(formatter._style) is not logging.PercentStyle or not fmt  # type: ignore[attr-defined]
            or not set(_FIELD.findall(fmt)) <= _FIELDS or not datefmt or "%f" in datefmt):
        return None
    return _TextLine(fmt, datefmt, formatter.converter)


class _TextLine:
    """Renders a ``%``-style format from the few fields our records have."""

    def __init__(self, fmt: str, datefmt: str, converter: Callable[..., Any]) -> None:
        from .setup import DEFAULT_FORMAT

        self.fmt, self.datefmt, self.converter = fmt, datefmt, converter
        self.default = fmt == DEFAULT_FORMAT
        self._second: Tuple[int, str] = (-1, "")

    def asctime(self, created: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = self._second = (second, time.strftime(self.datefmt, self.converter(created)))
        return cached[1]

    def __call__(self, created: float, name: str, level: int, levelname: str, message: str,
                 request_id: str, fields: LineFields) -> str:
        """The line, ending in a newline (:func:`write_line` renders the default format
        inline)."""
        thread = threading.current_thread()
        return self.fmt % {
            "asctime": self.asctime(created), "request_id": request_id, "name": name,
            "levelname": levelname, "levelno": level, "message": message, "process": _pid,
            "thread": thread.ident, "threadName": thread.name, "funcName": fields[1],
            "pathname": "sherlock_ai", "filename": "sherlock_ai", "module": "sherlock_ai",
            "lineno": 0,
        } + "\n"


def _before_fork() -> None:
    order_lock.acquire()


def _after_fork_in_parent() -> None:
    order_lock.release()


def _after_fork_in_child() -> None:
    global _pid
    _pid = os.getpid()
    order_lock._at_fork_reinit()  # type: ignore[attr-defined]


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
